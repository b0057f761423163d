"""Results of finished (or running) runs: loading, tables, plots and a self-contained HTML report."""
