"""The EAGLE-3 draft: config, model, vocabulary map and the vLLM/SGLang checkpoint format."""
