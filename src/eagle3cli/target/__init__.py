"""The target model below the stages: loading it (device, dtype), and a cache and attention for running stock HF causal LMs fast."""
