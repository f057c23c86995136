"""Side effects of the batch workflow."""
