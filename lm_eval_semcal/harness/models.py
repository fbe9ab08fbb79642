"""The semcal model backends, made known to lm-eval's model registry.

lm-eval 0.4.13 finds models only in its own registry and reads no plugin entry points:
the startup hook (`harness.plugin.add_backends`) calls `register_models` when lm-eval
imports its registry, and `semcal run` imports this module before lm-eval resolves
`--model`. The backends are registered by module path and imported on first use, so
this import does not load torch.
"""

from __future__ import annotations

MODELS = {
    "hf-semcal": "lm_eval_semcal.harness.hf_model:SemcalHFLM",
    "semcal-completions": "lm_eval_semcal.harness.api_model:SemcalCompletionsAPI",
    "semcal-chat-completions": "lm_eval_semcal.harness.api_model:SemcalChatCompletionsAPI",
}


def register_models() -> None:
    """Add the semcal backends to lm-eval's model registry (idempotent)."""
    import lm_eval.models  # noqa: F401  (registers lm-eval's own backends first)
    from lm_eval.api.registry import model_registry

    for name, target in MODELS.items():
        if name not in model_registry:
            model_registry.register(name, target=target)


register_models()
