"""hf-summary: crash-safe TensorBoard logging to the Hugging Face Hub."""
