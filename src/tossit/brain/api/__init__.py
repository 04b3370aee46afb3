"""The brain's HTTP routes, one module per resource."""
