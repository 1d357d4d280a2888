"""Data layer: DeepfakeBench index, sample table, views, transforms, synthetic benchmark, preprocessing."""
