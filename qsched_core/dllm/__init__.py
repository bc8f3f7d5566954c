"""Diffusion-LLM PTQ study in miniature (issue 13, specs dllm_ptq.md): a tiny LLaDA-style model, three task
families, the five PTQ methods of the study, and the outlier analysis. See results/dllm_ptq.md."""
