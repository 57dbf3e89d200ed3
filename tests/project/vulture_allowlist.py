"""Names vulture cannot see used: what a framework calls by name or finds by reflection.

Read by tests/project/test_dead_code.py (vulture's whitelist format: each line "uses" a name). Only
plugin classes, plugin hooks and framework callbacks belong here, each with the reason it is called;
anything else vulture reports is dead code and goes.
"""

from vulture.whitelist_utils import Whitelist

_ = Whitelist()

# Built-in plugins: hti_bench.harness.registry finds Surrogate and Task subclasses by scanning their
# modules (the plugin folders, hti_bench.tasks); no code names the class.
_.AnchoredDeltaSTN  # baselines/anchored_delta_stn.py: surrogate plugin class
_.Barycenter  # baselines/barycenter.py: surrogate plugin class
_.CFM  # baselines/cfm.py: surrogate plugin class
_.Direct  # baselines/direct.py: surrogate plugin class
_.DeltaSTN  # baselines/delta_stn.py: surrogate plugin class
_.Hypernetwork  # baselines/hypernetwork.py: surrogate plugin class
_.LambdaFlow  # baselines/lambda_flow.py: surrogate plugin class
_.LossConditional  # baselines/loss_conditional.py: surrogate plugin class
_.McCann  # baselines/mccann.py: surrogate plugin class
_.MFM  # baselines/mfm.py: surrogate plugin class
_.Mixture  # baselines/mixture.py: surrogate plugin class
_.NearestAnchor  # baselines/nearest_anchor.py: surrogate plugin class
_.STN  # baselines/stn.py: surrogate plugin class
_.MoonsDropout2D  # hti_bench/tasks/moons_dropout.py: task class
_.Quantile  # hti_bench/tasks/quantile.py: task class
_.RewardWeighting2D  # hti_bench/tasks/reward_weighting.py: task class
_.TensorTask  # hti_bench/tasks/tensor.py: task class

# Python's inspect.signature reads it: the harness builds and names surrogates from the whole signature.
_.__signature__  # hti_bench/toolkit/nets.py: SharedParameters gives a plugin's __init__ its inherited parameters

# Lightning: the Trainer calls the LightningModule's hooks (hti_bench/harness/targets.py).
_.training_step  # Lightning hook: one optimisation step
_.batch_idx  # training_step's argument, in the signature Lightning calls
_.configure_optimizers  # Lightning hook: the optimiser of the fit

# stable-baselines3: PPO drives the cancer task's vectorised environment through VecEnv's abstract
# interface (hti_bench/tasks/control/ghaffari.py).
_.render_mode  # VecEnv attribute SB3 reads
_.step_async  # VecEnv.step calls it
_.step_wait  # VecEnv.step calls it
_.get_attr  # VecEnv abstract method
_.set_attr  # VecEnv abstract method
_.env_method  # VecEnv abstract method
_.env_is_wrapped  # VecEnv abstract method
_.wrapper_class  # env_is_wrapped's argument, in the signature SB3 calls

# Dataclass fields read by name.
_.surrogate_spec  # SampleClouds (hti_bench/harness/unit.py): stored by as_dict() → ResultsStore, read back by key
_.hyperparameter  # SampleClouds (hti_bench/harness/unit.py): stored by as_dict() in the clouds file, read back by key

# ------------------------------------------------------------------------------------------------------

# The sandbox's requests: hti_bench.harness.sandbox.inside.Session.serve calls op_<request> by name.
_.op_call
_.op_describe
_.op_fit
_.op_open
_.op_sample
_.op_skip
_.tempdir  # tempfile.tempdir, set in a sandbox so that tempfile writes in its scratch folder
_.checks_of  # hti_bench/testing/surrogates.py: run in a sandbox by name (check_sealed's "call" request)
_.preload_builtin_plugins  # hti_bench/harness/registry.py: called by name by the sandbox template's preload list
