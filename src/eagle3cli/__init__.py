"""eagle3: EAGLE-3 speculative decoding — sample, dump hidden states, train drafts, benchmark."""

__version__ = "0.1.0"
