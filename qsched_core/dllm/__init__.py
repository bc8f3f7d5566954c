"""Diffusion-LLM PTQ study in miniature (after Lin et al., arXiv 2508.14896): a tiny LLaDA-style model, three task
families, the five PTQ methods of the study, and the outlier analysis. See results/dllm_ptq.md."""
