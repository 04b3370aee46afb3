"""The brain process: metadata, REST API and the cluster's background loops."""
