"""Networks (plain ``nn.Module``s built from ``conf/model``) and the LightningModule that trains them."""
