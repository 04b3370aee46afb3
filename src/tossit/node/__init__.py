"""The storage node process: keeps chunks on one local folder and serves them."""
