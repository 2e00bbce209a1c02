"""socketsvc: a real-time support chat backend (visitors, a bot, human agents) over Socket.IO."""

__version__ = "0.1.0"
