"""Training: samples, losses, optimisers, the trainer loop and crash-safe model folders."""
