"""Compute budgets: FLOPs (flops), peak memory (memory), weightless models (archs), one profiled
step of a real method (profile), MAF and steps (maf), a run's budget (plan), the table (table)."""
