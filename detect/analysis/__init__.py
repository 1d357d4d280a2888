"""Analysis outside the training core: figures, run loading, PNG saving, the engine benchmark."""
