"""TossIt: a distributed storage cluster of content-addressed, replicated chunks."""

__version__ = "0.1.0"
