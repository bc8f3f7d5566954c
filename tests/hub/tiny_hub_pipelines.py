"""Tiny random-weight pipelines of the hub tier's classes, built offline from configs.

Each builder returns the pipeline class the registry names for that family, with the scheduler the paper samples
it with, shrunk to a few thousand parameters per block: LCM (LatentConsistencyModelPipeline + LCMScheduler),
PCM's TCD (StableDiffusionPipeline + TCDScheduler), SDXL-Turbo (StableDiffusionXLPipeline + trailing
EulerAncestralDiscreteScheduler) and FLUX.1-schnell (FluxPipeline + FlowMatchEulerDiscreteScheduler). The CLIP
tokenizer is the repo's offline one; FLUX's T5 tokenizer is a character-level unigram vocabulary made here,
since no sentencepiece model can be downloaded.
"""
import torch
from diffusers import (
    AutoencoderKL,
    EulerAncestralDiscreteScheduler,
    FlowMatchEulerDiscreteScheduler,
    FluxPipeline,
    FluxTransformer2DModel,
    LatentConsistencyModelPipeline,
    LCMScheduler,
    StableDiffusionPipeline,
    StableDiffusionXLPipeline,
    TCDScheduler,
    UNet2DConditionModel,
)
from transformers import (
    CLIPTextConfig,
    CLIPTextModel,
    CLIPTextModelWithProjection,
    T5Config,
    T5EncoderModel,
    T5Tokenizer,
)

from qsched_core.tinyworld.tokenizer import load_tokenizer

BETAS = dict(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear")


def clip_text(with_projection: bool = False, seed: int = 0):
    torch.manual_seed(seed)
    config = CLIPTextConfig(hidden_size=32, intermediate_size=37, num_attention_heads=4, num_hidden_layers=2,
                            vocab_size=49408, max_position_embeddings=77, bos_token_id=49406, eos_token_id=49407,
                            pad_token_id=49407, projection_dim=32)
    return (CLIPTextModelWithProjection if with_projection else CLIPTextModel)(config).eval()


def vae(latent_channels: int = 4, **extra) -> AutoencoderKL:
    torch.manual_seed(0)
    return AutoencoderKL(block_out_channels=(32, 64), in_channels=3, out_channels=3, latent_channels=latent_channels,
                         norm_num_groups=32, down_block_types=("DownEncoderBlock2D",) * 2,
                         up_block_types=("UpDecoderBlock2D",) * 2, **extra).eval()


def unet(**extra) -> UNet2DConditionModel:
    torch.manual_seed(0)
    kw = dict(block_out_channels=(32, 64), layers_per_block=1, sample_size=8, in_channels=4, out_channels=4,
              down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
              up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), cross_attention_dim=32, norm_num_groups=32)
    return UNet2DConditionModel(**{**kw, **extra}).eval()


def t5_tokenizer() -> T5Tokenizer:
    chars = "abcdefghijklmnopqrstuvwxyz,."
    vocab = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("\u2581", -1.0)] + [(c, -2.0) for c in chars]
    return T5Tokenizer(vocab=vocab, extra_ids=0)


def build_lcm() -> LatentConsistencyModelPipeline:
    pipe = LatentConsistencyModelPipeline(
        vae=vae(), text_encoder=clip_text(), tokenizer=load_tokenizer(), unet=unet(time_cond_proj_dim=32),
        scheduler=LCMScheduler(**BETAS, original_inference_steps=50, timestep_scaling=10.0),
        safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    return pipe


def build_pcm() -> StableDiffusionPipeline:
    return StableDiffusionPipeline(
        vae=vae(), text_encoder=clip_text(), tokenizer=load_tokenizer(), unet=unet(),
        scheduler=TCDScheduler(**BETAS, original_inference_steps=50), safety_checker=None,
        feature_extractor=None, requires_safety_checker=False)


def build_sdxl() -> StableDiffusionXLPipeline:
    net = unet(cross_attention_dim=64, addition_embed_type="text_time", addition_time_embed_dim=8,
               projection_class_embeddings_input_dim=8 * 6 + 32, use_linear_projection=True)
    scheduler = EulerAncestralDiscreteScheduler(**BETAS, timestep_spacing="trailing", steps_offset=1)
    return StableDiffusionXLPipeline(
        vae=vae(), text_encoder=clip_text(), text_encoder_2=clip_text(with_projection=True, seed=1),
        tokenizer=load_tokenizer(), tokenizer_2=load_tokenizer(), unet=net, scheduler=scheduler,
        add_watermarker=False)


def build_flux() -> FluxPipeline:
    torch.manual_seed(0)
    transformer = FluxTransformer2DModel(patch_size=1, in_channels=4, num_layers=1, num_single_layers=1,
                                         attention_head_dim=16, num_attention_heads=2, joint_attention_dim=32,
                                         pooled_projection_dim=32, axes_dims_rope=(4, 4, 8)).eval()
    tok2 = t5_tokenizer()
    torch.manual_seed(0)
    t5 = T5EncoderModel(T5Config(vocab_size=len(tok2), d_model=32, d_kv=8, d_ff=37, num_layers=1, num_heads=4,
                                 relative_attention_num_buckets=8)).eval()
    return FluxPipeline(scheduler=FlowMatchEulerDiscreteScheduler(), vae=vae(1, use_quant_conv=False,
                        use_post_quant_conv=False, shift_factor=0.0609, scaling_factor=1.5035),
                        text_encoder=clip_text(), tokenizer=load_tokenizer(), text_encoder_2=t5, tokenizer_2=tok2,
                        transformer=transformer)


# registry name -> (builder, extra call arguments of the tiny pipeline)
TINY = {
    "SimianLuo/LCM_Dreamshaper_v7": (build_lcm, {}),
    "pcm-sd15-4step": (build_pcm, {"eta": 0.0}),
    "stabilityai/sdxl-turbo": (build_sdxl, {"height": 16, "width": 16}),
    "black-forest-labs/FLUX.1-schnell": (build_flux, {"height": 16, "width": 16, "max_sequence_length": 16}),
}
