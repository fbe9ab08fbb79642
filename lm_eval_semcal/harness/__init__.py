"""Layer 3, harness: the lm-eval adapters, the only code that imports lm_eval.

Each is a thin adapter over core and grouping: the `semcal_grouping` filter (`filter`)
calls the scorer, `process_results` and the aggregations (`metric_hooks`) call the
corpus metrics, `SemcalTask` (`task`) checks a run before it generates and rescues its
responses when grouping fails. Also here: the task datasets (`data`, `exemplars`), the backends `hf-semcal` and
`semcal-completions` (`hf_model`, `api_model`, `request_groups`) and their registration
(`models`); `semcal run` (`evaluate`) and its sample store, which makes a run with
`--use_cache` resumable (`sample_store`, plain; `resume`, the lm-eval wrapper). The task YAMLs themselves are in `lm_eval_semcal/tasks/`.

May import: core, grouping, lm_eval, datasets, transformers, torch.
"""
