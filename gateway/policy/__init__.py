"""The approved data set: the policy model, strict parsing, decisions, the register."""
