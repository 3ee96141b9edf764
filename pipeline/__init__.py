"""artmator's catalog pipeline: manifest -> Ray Data tuning actors -> committed outputs -> report and gallery."""
