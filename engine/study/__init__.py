"""The ratio study: one pure core (`core.compute_study`) behind `optical report` and the study
screen, its output formats and plots."""
