"""``sslkit reproduce``: a paper's pretraining + evaluation protocol end to end, with its numbers."""
