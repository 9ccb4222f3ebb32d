"""Evaluation: resumable runs over image folders (``runs``; what they evaluate: ``settings``;
where the rows are computed: ``executors``; where they ran: ``provenance``), reports
(``reports``), BD-rates (``bdrate``), Pillow baselines, published references and plots."""
