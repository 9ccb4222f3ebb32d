"""Evaluation: resumable runs over image folders (``runs``), reports (``reports``), Pillow
baselines, published references and plots."""
