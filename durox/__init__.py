"""durox: durable orchestrations for Python."""
