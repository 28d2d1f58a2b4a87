"""A researcher's own project: a LightningModule, a network, an image Dataset and a k-fold DataModule."""
