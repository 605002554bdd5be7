"""Crop-detector family (``det_yolo``): ultralytics YOLO built from a yaml and trained from scratch on one box
per slice (organ union or body), predicting a smoothed box per slice for every case-day.

The 2.5D family crops with these boxes: ground truth with jitter at train time
(:func:`.boxes.truth_boxes`), detections at predict time (:func:`.predict.load_boxes`). Registered lazily as
``"kaggle_kit.families.det_yolo.api:family"``; importing this package loads no torch or ultralytics.
"""
