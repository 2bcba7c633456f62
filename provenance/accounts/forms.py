from __future__ import annotations

from django import forms

from provenance.accounts.models import ApiToken
from provenance.accounts.roles import Role
from provenance.accounts.services import MAX_TOKEN_DAYS


class TokenForm(forms.Form):
    name = forms.CharField(max_length=100, help_text="What the token is for, e.g. ci-gate.")
    scope = forms.ChoiceField(choices=ApiToken.Scope.choices, initial=ApiToken.Scope.READ)
    days = forms.IntegerField(min_value=1, max_value=MAX_TOKEN_DAYS, initial=90, label="Valid for (days)")


class RoleForm(forms.Form):
    role = forms.ChoiceField(choices=[("", "no role"), *[(r.value, r.value) for r in Role]], required=False)
