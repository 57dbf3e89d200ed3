"""What the reinforcement-learning tasks share (``cancer``, ``reacher``).

- :mod:`~hti_bench.tasks.control.policy`: the target network of a policy task, a plain torch module
  holding a PPO policy's actor (and the observation normalisation it was trained with), and
  :func:`~hti_bench.tasks.control.policy.train_ppo`, which trains one with stable-baselines3;
- :mod:`~hti_bench.tasks.control.base`: :class:`~hti_bench.tasks.control.base.PolicyTask`, the base
  class of a task whose targets are policies trained with a λ-weighted reward, whose conditions are
  the states a fixed behaviour policy visits, and whose closed-loop metric is the episode return when
  the surrogate picks every action;
- :mod:`~hti_bench.tasks.control.ghaffari`: the cancer-treatment model, simulated in numpy for a batch
  of episodes at once.

Nothing here imports stable-baselines3, gymnasium or MuJoCo at import time: the registry imports every
task module to list them.
"""
