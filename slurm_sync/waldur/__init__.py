"""The Waldur adapter: the only code that knows HTTP, python-waldur-client and Waldur's server generations.
Callers ask for intents (approve, report usage, ...) and get domain input back."""
