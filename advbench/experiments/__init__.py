"""Paper-specific experiments beside the grid: GAT detector AUC tables (paper 001 Table 2),
targeted-example figures (paper 000 Fig. 4), hyperparameter robustness curves (paper 003 Fig. 5)."""
