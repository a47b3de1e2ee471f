"""The uploader: the child process that pushes a logdir's sealed segments, and the trainer's handle on it.

- :mod:`~hf_summary.uploader.launcher` (trainer side): starts the child and owns the pipes to it;
- :mod:`~hf_summary.uploader.protocol`: the words on those pipes, and the token-first handshake;
- ``python -m hf_summary.uploader`` (:mod:`hf_summary.uploader.__main__`): the child's entry, with
  :mod:`~hf_summary.uploader.environment`, its process settings;
- :mod:`~hf_summary.uploader.drain`: the drain loop; :mod:`~hf_summary.uploader.preemption`: its urgent,
  bounded end; :mod:`~hf_summary.uploader.pusher`: one push with backoff (``recover`` pushes with it too).

Importing this package imports nothing else: the trainer loads only the launcher and the protocol.
"""
