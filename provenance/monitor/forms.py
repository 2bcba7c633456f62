from __future__ import annotations

from django import forms

from provenance.monitor.models import AlertRule, Event, MonitoredLog
from provenance.sources.models import Source
from provenance.trust.models import TrustRoot


class LogForm(forms.Form):
    name = forms.SlugField(max_length=100)
    kind = forms.ChoiceField(choices=MonitoredLog.Kind.choices)
    url = forms.URLField(max_length=300, assume_scheme="https", help_text="e.g. https://rekor.sigstore.dev")
    trust_root = forms.ModelChoiceField(queryset=TrustRoot.objects.all(), to_field_name="name")
    log_id = forms.RegexField(regex=r"^[0-9a-fA-F]{64}$", help_text="The log's id (hex) in the trust root.")
    start_index = forms.IntegerField(min_value=0, initial=0)
    batch_size = forms.IntegerField(min_value=1, max_value=1000, initial=100)


class WatchForm(forms.Form):
    subject = forms.CharField(max_length=500, required=False, help_text="Certificate SAN, exactly.")
    subject_regexp = forms.CharField(max_length=500, required=False, help_text="Or a regexp (unanchored).")
    issuer = forms.CharField(max_length=500, required=False, help_text="OIDC issuer, exactly.")
    issuer_regexp = forms.CharField(max_length=500, required=False)
    repository = forms.CharField(max_length=200, required=False, help_text="Workflow claim: owner/name.")
    ref = forms.CharField(max_length=200, required=False, help_text="Workflow claim: refs/heads/main.")
    trigger = forms.CharField(max_length=50, required=False)
    sha = forms.CharField(max_length=40, required=False)
    key_fingerprint = forms.CharField(max_length=80, required=False, help_text="Or a key: sha256:<hex>.")

    def values(self) -> dict[str, object]:
        data = self.cleaned_data
        claims = {k: data[k] for k in ("repository", "ref", "trigger", "sha") if data.get(k)}
        return {k: data.get(k, "") for k in ("subject", "subject_regexp", "issuer", "issuer_regexp",
                                              "key_fingerprint")} | {"claims": claims}


class AllowlistForm(forms.Form):
    digest = forms.CharField(max_length=140, required=False, help_text="sha256:<hex> the log entry signs.")
    subject_regexp = forms.CharField(max_length=500, required=False)
    note = forms.CharField(max_length=300)
    expires_at = forms.DateTimeField(required=False)


class RuleForm(forms.Form):
    name = forms.CharField(max_length=200)
    channel = forms.ChoiceField(choices=AlertRule.Channel.choices)
    kinds = forms.MultipleChoiceField(choices=[c for c in Event.Kind.choices if c[0] != "test"], required=False,
                                      widget=forms.CheckboxSelectMultiple, help_text="None: every kind.")
    sources = forms.ModelMultipleChoiceField(queryset=Source.objects.all(), required=False,
                                             help_text="None: every source.")
    policies = forms.CharField(max_length=2000, required=False, help_text="Comma-separated policy names.")
    url = forms.URLField(max_length=500, required=False, assume_scheme="https")
    secret = forms.CharField(max_length=200, required=False, widget=forms.PasswordInput(render_value=False),
                             help_text="Signs each request (HMAC-SHA256); empty keeps the current one.")
    emails = forms.CharField(max_length=1000, required=False, help_text="Comma-separated addresses.")
    is_enabled = forms.BooleanField(required=False, initial=True)

    def values(self) -> dict[str, object]:
        data = self.cleaned_data
        policies = [p.strip() for p in data.get("policies", "").split(",") if p.strip()]
        return {"name": data["name"], "channel": data["channel"], "kinds": list(data.get("kinds") or []),
                "policies": policies, "url": data.get("url", ""), "secret": data.get("secret", ""),
                "emails": data.get("emails", ""), "is_enabled": data.get("is_enabled", False)}
