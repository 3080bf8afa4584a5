"""A drawn point whose leading gap sits at float64 round-off is drawn again (Theorem 1's slope fits)."""


def test_a_point_too_close_to_roundoff_for_a_slope_fit_is_drawn_again():
    from types import SimpleNamespace

    from numeric.modified_flow import GapBelowRoundoff
    from theorems.settings.entropic_loss import REDRAW_STRIDE, off_roundoff

    def fit(seed):
        if seed == 7:
            raise GapBelowRoundoff("order 1: the gap is too close to float64 round-off")
        return SimpleNamespace(details={"seed": seed})

    assert off_roundoff(fit, 7).details == {"seed": 7 + REDRAW_STRIDE, "redraws": 1}
    assert off_roundoff(fit, 3).details == {"seed": 3, "redraws": 0}
