"""Closed-form denoisers for tests: the perfect models when the data set is one image x*."""

from course_utils import targets


def eps_oracle(schedule, x_star):
    """The perfect epsilon model for the one-point data set {x*}: eps = (xt - alpha x*) / sigma."""

    def model(xt, t, cond=None):
        a, s = targets.coef(schedule.alpha(t), xt), targets.coef(schedule.sigma(t), xt)
        return targets.eps_from_x0(xt, x_star, a, s)

    return model


def velocity_oracle(x_star):
    """The perfect velocity for {x*} on the flow path: u = (xt - x*) / t."""

    def model(xt, t, cond=None):
        return (xt - x_star) / targets.coef(t, xt)

    return model
