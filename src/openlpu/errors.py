"""The one error type that reaches a user: a single sentence naming the bad value and the fix."""


class UserError(Exception):
    """Bad input from a user or a program. The message is shown as is, without a traceback."""
