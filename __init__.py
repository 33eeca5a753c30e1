"""synctalk-parity: SyncTalk_2D models on every runtime, proven stage by stage against the reference."""

__version__ = "0.1.0"
