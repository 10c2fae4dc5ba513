from django.urls import path
from drf_spectacular.views import SpectacularJSONAPIView

from energy.http.ledger_views import AccountConsumptionsView, ConsumptionView
from energy.http.plain import consume_endpoint
from energy.views import AccountView, HealthView

urlpatterns = [
    # ConsumeView answers every consume request the plain path hands it (energy/http/plain.py).
    path("api/energy/consume/", consume_endpoint, name="consume"),
    path("api/energy/accounts/<str:account_id>/", AccountView.as_view(), name="account"),
    path("api/energy/accounts/<str:account_id>/consumptions/", AccountConsumptionsView.as_view(),
         name="account-consumptions"),
    # path: a key may contain "/" (sent as %2F); the trailing slash still ends the pattern.
    path("api/energy/consumptions/<path:key>/", ConsumptionView.as_view(), name="consumption"),
    path("healthz", HealthView.as_view(), name="healthz"),
    path("api/schema/", SpectacularJSONAPIView.as_view(), name="schema"),
]
