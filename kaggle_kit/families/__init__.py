"""Model families: det_yolo, cls, seg25d (smp), seg25d_mmseg, seg3d; each with model / train / predict modules."""
