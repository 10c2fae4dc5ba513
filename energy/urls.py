from django.urls import path, register_converter
from drf_spectacular.renderers import OpenApiJsonRenderer, OpenApiJsonRenderer2
from drf_spectacular.views import SpectacularJSONAPIView

from energy.http import openapi
from energy.http.entry_views import CreditView, ReverseView
from energy.http.hold_views import CaptureView, HoldView, VoidView
from energy.http.ledger_views import AccountConsumptionsView, ConsumptionView
from energy.http.views import AccountView, ConsumeView, HealthView


class AnyText:
    """Anything up to the final slash, line breaks included: a key the rules refuse is a 400
    naming it, not a path that matches nothing."""

    regex = r"(?s:.+)"

    def to_python(self, value: str) -> str:
        return value

    def to_url(self, value: str) -> str:
        return value


register_converter(AnyText, "anytext")

urlpatterns = [
    path("api/energy/consume/", ConsumeView.as_view(), name="consume"),
    path("api/energy/accounts/<str:account_id>/", AccountView.as_view(), name="account"),
    path("api/energy/accounts/<str:account_id>/consumptions/", AccountConsumptionsView.as_view(),
         name="account-consumptions"),
    path("api/energy/credit/", CreditView.as_view(), name="credit"),
    # A key may contain "/" (sent as %2F); the trailing slash still ends the pattern. Before the
    # record's pattern, which would otherwise take "K/reverse" for a key.
    path("api/energy/consumptions/<anytext:key>/reverse/", ReverseView.as_view(), name="reverse"),
    path("api/energy/consumptions/<anytext:key>/", ConsumptionView.as_view(), name="consumption"),
    path("api/energy/holds/", HoldView.as_view(), name="holds"),
    path("api/energy/holds/<anytext:key>/capture/", CaptureView.as_view(), name="capture"),
    path("api/energy/holds/<anytext:key>/void/", VoidView.as_view(), name="void"),
    path("healthz", HealthView.as_view(), name="healthz"),
    # application/json first: also what a refusal of this view (405, 406) is sent as.
    path("api/schema/", SpectacularJSONAPIView.as_view(
        custom_settings=openapi.DOCUMENT_SETTINGS, renderer_classes=[OpenApiJsonRenderer2, OpenApiJsonRenderer]),
         name="schema"),
]

# What Django itself refuses (no endpoint, a Host not allowed, a failure) is answered in JSON too.
handler400 = "energy.http.errors.bad_request"
handler403 = "energy.http.errors.permission_denied"
handler404 = "energy.http.errors.not_found"
handler500 = "energy.http.errors.server_error"
