"""Data layer: DeepfakeBench index, sample table, dataset views, transforms, synthetic benchmark, preprocessing."""
