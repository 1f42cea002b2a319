"""The audit trail: who viewed, exported or erased which client's data, when."""
