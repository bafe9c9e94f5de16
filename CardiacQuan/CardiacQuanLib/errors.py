"""The error a CardiacQuan run reports to the user.

Every helper raises the same exception so the widget and console users catch one type, and its
message is one line: it goes to a status label.
"""


class CardiacQuanRunError(RuntimeError):
    """A run that could not start or did not finish; the message is one line for the user."""


def oneLine(message) -> str:
    """The message on one line (never empty)."""
    text = " ".join(str(message).split())
    return text if text else "unknown error"
