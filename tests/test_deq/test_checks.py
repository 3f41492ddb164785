import pytest

from mdeq_mm.deq.checks import check_choice, check_int, check_keys, check_number


def test_unknown_keys_are_all_named_with_the_valid_ones():
    with pytest.raises(ValueError, match=r"unknown solver config key\(s\) \['a', 'b'\]; valid "
                       r"keys: \['tol'\]"):
        check_keys({'tol': 1, 'b': 2, 'a': 3}, ('tol', ), 'solver config')


def test_a_value_outside_the_choices_is_named():
    check_choice('mode', 'abs', ('abs', 'rel'))
    with pytest.raises(ValueError, match=r"mode='max' is not valid"):
        check_choice('mode', 'max', ('abs', 'rel'))


@pytest.mark.parametrize('value', [0, 1.0, True, '2'])
def test_an_int_check_rejects_small_values_floats_and_bools(value):
    with pytest.raises(ValueError, match='k must be an int >= 1'):
        check_int('k', value, 1)


def test_a_number_check_honours_its_interval_ends():
    check_number('tau', 1.0, 0.0, 1.0)
    check_number('p', 0.0, 0.0, 1.0, low_inclusive=True)
    with pytest.raises(ValueError, match=r'tau must be in \(0.0, 1.0\], got 0.0'):
        check_number('tau', 0.0, 0.0, 1.0)
    with pytest.raises(ValueError, match='must be a number'):
        check_number('tau', True, 0.0)
