"""``eagle3 bench``: speculative decoding against plain decoding on benchmark questions."""
