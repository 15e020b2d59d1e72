"""One module per outside system (SMTP, hCaptcha, ...): the only code that imports their
client libraries, and the only place retries with tenacity live."""
