"""Research tools: a random hyperparameter sweep (``sweep``) and the quantization study
(``quantstudy``)."""
