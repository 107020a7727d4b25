"""Pictures of what a model does: figures, the browser viewer and TensorBoard."""
