"""The uploader: the child process that pushes a logdir's sealed segments, and the trainer's handle on it.

- `launcher` (trainer side): starts the child and owns the pipes to it;
- `protocol`: the words on those pipes, and the token-first handshake;
- `python -m hf_summary.uploader` (`hf_summary.uploader.__main__`): the child's entry, with
  `environment`, its process settings;
- `drain`: the drain loop; `preemption`: its urgent,
  bounded end; `pusher`: one push with backoff (`recover` pushes with it too).

Importing this package imports nothing else: the trainer loads only the launcher and the protocol.
"""
