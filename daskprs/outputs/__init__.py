"""The client's side of the output: assemble committed results, write logs and reports."""
