"""Training techniques as framework-neutral data and NumPy: pruning masks and schedules, data
augmentation."""
