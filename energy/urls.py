from django.urls import path
from drf_spectacular.views import SpectacularJSONAPIView

from energy.http.ledger_views import AccountConsumptionsView, ConsumptionView
from energy.http.views import AccountView, ConsumeView, HealthView

urlpatterns = [
    path("api/energy/consume/", ConsumeView.as_view(), name="consume"),
    path("api/energy/accounts/<str:account_id>/", AccountView.as_view(), name="account"),
    path("api/energy/accounts/<str:account_id>/consumptions/", AccountConsumptionsView.as_view(),
         name="account-consumptions"),
    # path: a key may contain "/" (sent as %2F); the trailing slash still ends the pattern.
    path("api/energy/consumptions/<path:key>/", ConsumptionView.as_view(), name="consumption"),
    path("healthz", HealthView.as_view(), name="healthz"),
    path("api/schema/", SpectacularJSONAPIView.as_view(), name="schema"),
]
