"""The science pipeline: pure stages from a FITS file to a FrameResult."""
